"""vlm-agent serve: the built-in NaVid models behind an OpenAI-compatible chat-completions API.

Request semantics (max_tokens, system messages, temperature, stop, usage) are in
`vlm_agent.planners.openai_server`'s docstring.
"""
from __future__ import annotations

import os
import sys

HELP = "serve built-in NaVid models over an OpenAI-compatible API (POST /v1/chat/completions, GET /v1/models)"
# As vLLM's VLLM_API_KEY: the key without putting it on the command line (where `ps` shows it).
API_KEY_ENV = "VLM_AGENT_API_KEY"


def add_arguments(parser) -> None:
    parser.add_argument("--model", action="append", default=[], help="NaVid model directory (repeatable; default: the shipped checkpoints/navid_film)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to accept other machines: set an API key then)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None,
                        help=f"require 'Authorization: Bearer <key>' on every route but /health (default: ${API_KEY_ENV}; empty = no key)")
    parser.add_argument("--max-body-mib", type=float, default=32.0, help="larger request bodies get HTTP 413 before they are parsed")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--delay-s", type=float, default=0.0, help="artificial latency per completion in seconds (for testing client timeouts)")


def resolve_api_key(args, environ=os.environ) -> str:
    """--api-key when given (even empty), else $VLM_AGENT_API_KEY, else no key ('')."""
    return args.api_key if args.api_key is not None else environ.get(API_KEY_ENV, "")


def run(args) -> int:
    import uvicorn

    # The default navigator reads a map memory (depth + odometry) that chat requests do not carry:
    # serve the best image-only model by default.
    from vlm_agent.planners.navid import IMAGE_ONLY_CHECKPOINT as DEFAULT_CHECKPOINT
    from vlm_agent.planners.openai_server import create_app, is_loopback

    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port} is out of range")
    if not args.max_body_mib > 0:
        raise ValueError(f"--max-body-mib must be > 0, got {args.max_body_mib}")
    api_key = resolve_api_key(args)
    if not api_key and not is_loopback(args.host):
        print(f"vlm-agent serve: WARNING: listening on {args.host} without an API key: anyone who can reach port {args.port} "
              f"can use the model (set --api-key or ${API_KEY_ENV})", file=sys.stderr, flush=True)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    app = create_app(args.model or [DEFAULT_CHECKPOINT], delay_s=args.delay_s, api_key=api_key, max_body_bytes=int(args.max_body_mib * 1024 * 1024))
    auth = ", API key required" if api_key else ""
    print(f"vlm-agent serve: http://{args.host}:{args.port}/v1 ({', '.join(args.model or [DEFAULT_CHECKPOINT])}{auth})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
