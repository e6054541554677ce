"""The OpenAI-compatible HTTP endpoint apps on the device talk to (docs/serving.md).

    listener.py  the server thread on a local address (agent.local_address)
    app.py       Starlette routes: /v1/models, /v1/chat/completions, /v1/completions, /health
    schema.py    pure: request bodies -> GenerationRequest, results -> OpenAI JSON
    streaming.py a generation running in a thread, read by the event loop; server-sent events
    errors.py    one table from agent errors to HTTP status and OpenAI error type and code

Only ``listener`` is imported by the agent; it imports Starlette and uvicorn (the optional
``edgefleet[openai]`` extra) when the endpoint is asked for, and without them answers every
request with a 503 that names the missing extra.
"""
