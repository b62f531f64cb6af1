"""vlm-agent serve: the built-in NaVid models behind an OpenAI-compatible chat-completions API."""
from __future__ import annotations

HELP = "serve built-in NaVid models over an OpenAI-compatible API (POST /v1/chat/completions, GET /v1/models)"


def add_arguments(parser) -> None:
    parser.add_argument("--model", action="append", default=[], help="NaVid model directory (repeatable; default checkpoints/navid_tiny)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to accept other machines)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--delay-s", type=float, default=0.0, help="artificial latency per completion in seconds (for testing client timeouts)")


def run(args) -> int:
    import uvicorn

    from vlm_agent.planners.navid import DEFAULT_CHECKPOINT
    from vlm_agent.planners.openai_server import create_app

    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port} is out of range")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    app = create_app(args.model or [DEFAULT_CHECKPOINT], delay_s=args.delay_s)
    print(f"vlm-agent serve: http://{args.host}:{args.port}/v1 ({', '.join(args.model or [DEFAULT_CHECKPOINT])})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
