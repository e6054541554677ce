"""What the controller and the agent must agree on, in one place.

Imports nothing of the agent or the controller (an import-linter contract checks), so both
sides, and the controller's pure core, can use it. The wire form of an error kind is the
proto enum ``edgefleet.agent.v1.ErrorKind``; ``ErrorKind`` here mirrors it value for value
(a test compares them), so code decides on a kind, never on a class name or message text.
"""

from __future__ import annotations

import enum
import hashlib
from pathlib import Path

MIB = 1024 * 1024

# Never fill a device's disk to the last byte: preflight, the planner and the store keep this
# much free beside every blob.
DISK_MARGIN_BYTES = 64 * MIB
# A worker process with Python and llama.cpp loaded, before weights, KV cache and compute
# buffer (measured: tiny-llama worker RSS = weights + 57-78 MiB at ctx 512, of which KV and
# compute are ~26 MiB by the cost model; x86_64, llama-cpp-python 0.3.x).
RUNTIME_OVERHEAD_BYTES = 48 * MIB

# The layout of a signed load order (agent.manifest_check, controller.services.manifests).
MANIFEST_FORMAT = 2

# gRPC trailing metadata: a serialized ErrorDetail on every error status of the agent.
ERROR_DETAIL_KEY = "edgefleet-error-bin"
# grpc.health.v1 service name that is SERVING while a model is loaded.
MODEL_HEALTH_SERVICE = "edgefleet.agent.v1.Model"


class ErrorKind(enum.IntEnum):
    """Why the agent refused (values = proto ErrorKind)."""

    UNSPECIFIED = 0
    INVALID_REQUEST = 1
    NOT_FOUND = 2
    CHECKSUM_MISMATCH = 3
    INSUFFICIENT_MEMORY = 4
    INSUFFICIENT_DISK = 5
    NOT_FOR_THIS_MACHINE = 6
    NO_ACTIVE_MODEL = 7
    MANIFEST_REJECTED = 8
    GENERATION_FAILED = 9
    WORKER_FAILED = 10
    NOT_ON_TRIAL = 11
    BLOB_CORRUPT = 12
    MANIFEST_STALE = 13
    ADAPTER_MISMATCH = 14


# Refusals that say the model cannot run on that device (they count against a rollout's
# failure budget), as opposed to the device, the link, the bytes or our configuration.
MODEL_REFUSALS = frozenset({ErrorKind.NOT_FOR_THIS_MACHINE, ErrorKind.INSUFFICIENT_MEMORY,
                            ErrorKind.WORKER_FAILED, ErrorKind.GENERATION_FAILED})


class RevertCause(enum.IntEnum):
    """Why the agent gave up a model on trial (values = proto RevertCause)."""

    UNSPECIFIED = 0
    RESTART = 1
    CRASH = 2
    DEADLINE = 3
    ABORTED = 4


# The agent contract's version (GetVersion): 1 for every agent before GetVersion existed
# (edgefleet 0.1.0), 2 since. Raised when a change needs both sides to know of it.
CONTRACT_VERSION = 2


class Capability(str, enum.Enum):
    """What an agent can do, as it says in GetVersion; the controller checks a rollout's needs
    against them before sending a byte (controller.core.compat)."""

    CHECK_FIT = "check-fit"  # CheckFit: refuses before any byte is sent
    STAGE = "stage"  # StageModel: verified and pinned ahead of activation (pre-pull)
    TRIAL = "trial"  # LoadModel(trial) + CommitModel; a restart gives the model up
    SIGNED_MANIFEST = "signed-manifest"  # verifies the controller's signed load order
    BENCHMARK = "benchmark"  # Benchmark RPC (fleet device calibrate)
    TELEMETRY_SAMPLES = "telemetry-samples"  # device samples kept and read by cursor
    ABORT_TRIAL = "abort-trial"  # AbortTrial: back to its own previous model
    TRIAL_DEADLINE = "trial-deadline"  # gives the model up unless committed in trial_seconds
    ERROR_KINDS = "error-kinds"  # every refusal carries an ErrorDetail (kind)
    # refuses a load order for another device, expired, or at or below its version mark
    # (MANIFEST_FORMAT 2: agent.manifest_check)
    BOUND_MANIFEST = "bound-manifest"
    # Transfer.FetchBlob / Peer.ReadBlob (agent.peer_transfer): fetches a blob from its site's
    # devices and serves its own to them, over mutual TLS (served once it has a peer identity)
    PEER_TRANSFER = "peer-transfer"
    # LoadModel(format "lora", base_sha256): a LoRA adapter on the loaded base, no reload;
    # Generate(adapter) and OpenAI model names MODEL+ADAPTER pick one per request
    LORA_ADAPTERS = "lora-adapters"
    # several models per device: one slot per model name beside the others (LoadModel
    # aliases/replace/pinned, GetStore.slots), least-recently-used unloading, loads on demand,
    # Generate(model) by name or alias
    MULTI_MODEL = "multi-model"


# What this agent offers.
AGENT_CAPABILITIES = frozenset(Capability)
# What an agent that answers GetVersion with UNIMPLEMENTED is taken to offer: edgefleet
# 0.1.0's, as of its last build before the rollout state machine (3da7b10). Builds between that
# and GetVersion had more, but cannot say so: they are asked to upgrade too.
LEGACY_CAPABILITIES = frozenset({
    Capability.CHECK_FIT, Capability.STAGE, Capability.TRIAL, Capability.SIGNED_MANIFEST,
    Capability.BENCHMARK})

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()
