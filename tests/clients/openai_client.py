#!/usr/bin/env python3
"""Drives an OpenAI-compatible endpoint with the real `openai` package.

    openai_client.py BASE_URL API_KEY MODE [--model M] [--message TEXT]

BASE_URL is the API root the `openai` package expects, e.g.
http://127.0.0.1:8089/v1. Modes:

  plain         one chat completion; prints {"content": ...}
  stream        stream=True; prints {"content": <joined deltas>, "chunks": N,
                "finish_reason": ..., "usage": ...}
  expect-block  expects the call to fail with an HTTP error status
                (openai.APIStatusError: PermissionDeniedError,
                BadRequestError, ...); prints {"status": ..., "message": ...,
                "body": ...} and exits 0 only if such an error came

Output is one JSON line on stdout. Anything unexpected exits non-zero with
the reason on stderr: 1 for a wrong outcome, 2 for a failure to talk to
the endpoint at all.
"""

import argparse
import json
import sys

import openai


def fail(code: int, message: str) -> "NoReturn":  # noqa: F821
    print(f"openai_client.py: {message}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_url")
    parser.add_argument("api_key")
    parser.add_argument("mode", choices=["plain", "stream", "expect-block"])
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--message", default="Hello from the openai client")
    parser.add_argument(
        "--include-usage", action="store_true", help="stream mode: ask for the usage chunk (stream_options)"
    )
    parser.add_argument("--stream", action="store_true", help="expect-block mode: send the request with stream=True")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    args = parser.parse_args()

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=args.timeout)
    messages = [{"role": "user", "content": args.message}]

    try:
        if args.mode == "plain":
            completion = client.chat.completions.create(model=args.model, messages=messages)
            if not completion.choices:
                fail(1, f"the completion has no choices: {completion.model_dump_json()}")
            content = completion.choices[0].message.content
            if content is None:
                fail(1, f"the completion's message has no content: {completion.model_dump_json()}")
            print(json.dumps({"content": content, "model": completion.model, "id": completion.id}))
        elif args.mode == "stream":
            extra = {"stream_options": {"include_usage": True}} if args.include_usage else {}
            stream = client.chat.completions.create(model=args.model, messages=messages, stream=True, **extra)
            parts, chunks, finish, usage = [], 0, None, None
            for chunk in stream:
                chunks += 1
                if chunk.usage is not None:
                    usage = chunk.usage.model_dump()
                for choice in chunk.choices:
                    if choice.delta.content:
                        parts.append(choice.delta.content)
                    if choice.finish_reason is not None:
                        finish = choice.finish_reason
            if chunks == 0:
                fail(1, "the stream ended without a single chunk")
            print(json.dumps({"content": "".join(parts), "chunks": chunks, "finish_reason": finish, "usage": usage}))
        else:
            try:
                if args.stream:
                    for _ in client.chat.completions.create(model=args.model, messages=messages, stream=True):
                        pass
                else:
                    client.chat.completions.create(model=args.model, messages=messages)
            except openai.APIStatusError as e:
                print(json.dumps({"status": e.status_code, "message": e.message, "body": e.body}))
                return
            fail(1, "expected the request to be blocked with an HTTP error status, but it succeeded")
    except openai.APIStatusError as e:
        fail(1, f"the endpoint answered {e.status_code}: {e.message}")
    except openai.APIConnectionError as e:
        fail(2, f"cannot reach {args.base_url}: {e!r} (cause: {e.__cause__!r})")
    except openai.OpenAIError as e:
        fail(1, f"the openai package failed: {e!r}")


if __name__ == "__main__":
    main()
