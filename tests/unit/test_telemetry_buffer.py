"""The on-device request buffer: bounded, persistent, read by cursor."""

from __future__ import annotations

from pathlib import Path

from agent.telemetry import TelemetryBuffer


def _add(buf: TelemetryBuffer, n: int) -> None:
    for _ in range(n):
        buf.append(sha256="a" * 64, variant="q4", ttft_ms=1.0, total_ms=2.0, prompt_tokens=1,
                   completion_tokens=2, decode_tokens_per_s=3.0, outcome="ok")


def test_bounded_and_sequence_keeps_counting(tmp_path: Path) -> None:
    buf = TelemetryBuffer(tmp_path / "r.jsonl", max_records=10)
    _add(buf, 25)
    kept = buf.after(0, 1000)
    assert len(kept) <= 10 and kept[-1].seq == 25
    assert [r.seq for r in kept] == list(range(kept[0].seq, 26))  # no gap inside what is kept
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == len(kept)
    assert buf.total == 25 and [r.seq for r in buf.tail(3)] == [23, 24, 25]


def test_survives_a_restart_and_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    _add(TelemetryBuffer(path), 3)
    with path.open("a") as fh:
        fh.write('{"seq": 4, "timest')  # power cut mid-write
    again = TelemetryBuffer(path)
    assert [r.seq for r in again.after(0, 10)] == [1, 2, 3]
    _add(again, 1)
    assert again.after(3, 10)[0].seq == 4


def test_a_reader_learns_what_it_missed_and_a_lost_file_starts_a_new_epoch(
        tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    buf = TelemetryBuffer(path, max_records=10)
    _add(buf, 12)  # 11th append dropped the oldest half
    assert buf.first_seq > 1 and buf.after(0, 100)[0].seq == buf.first_seq
    epoch = buf.epoch
    assert TelemetryBuffer(path, max_records=10).epoch == epoch  # a restart keeps it
    path.unlink()
    fresh = TelemetryBuffer(path, max_records=10)
    assert fresh.epoch != epoch and fresh.total == 0 and fresh.first_seq == 0
    _add(fresh, 1)
    assert fresh.after(0, 10)[0].seq == 1


def test_records_of_an_older_agent_load_without_the_newer_fields(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"seq": 7, "timestamp": 1.0, "sha256": "a", "variant": "q4", '
                    '"ttft_ms": 1.0, "total_ms": 2.0, "prompt_tokens": 1, '
                    '"completion_tokens": 2, "decode_tokens_per_s": 3.0, "outcome": "ok"}\n')
    buf = TelemetryBuffer(path)
    assert buf.total == 7 and buf.after(6, 1)[0].prefill_tokens_per_s == 0.0
