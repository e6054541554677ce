"""Model runtimes. Each runs inside a worker process (``agent.workers``), never in the agent."""
