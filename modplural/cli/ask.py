"""``modplural ask``: one question, one method, one mode, printed as text or JSON."""

from __future__ import annotations

import argparse
import json

from modplural.cli import options
from modplural.errors import ModPluralError
from modplural.names import ETHOS_PERSPECTIVES as DEFAULT_PERSPECTIVES
from modplural.text import terminal_safe
from modplural.validation import check_count, check_weights


def register(sub: argparse._SubParsersAction) -> None:
    ask = sub.add_parser("ask", help="answer a health question pluralistically")
    ask.add_argument("question")
    options.add_mode(ask)
    options.add_method(ask)
    ask.add_argument("--attribute", default=None, help="steerable: what to reflect, e.g. 'the value of autonomy'")
    ask.add_argument("--option", action="append", default=None, help="an answer option (repeat; distributional or steerable)")
    ask.add_argument("--persona", default=None, help="a framing sentence, e.g. 'You are from the country of Kenya.'")
    ask.add_argument("--weights", default=None, help="distributional: 'uniform' (default), 'registry' or one number per community")
    options.add_stack(ask)
    options.add_protocol(ask, "modplural", "modplural (default) or original: the released scripts' prompts, reading and decoding; original sends the question as written, so list the options in it and end it with 'Answer:' as the datasets do")
    options.add_switches(ask)
    ask.add_argument("--calibration", choices=["none", "content_free"], default=None,
                     help="divide option answers and selections by the model's prior over the labels, read from the same prompt with the "
                          "content replaced by N/A (content_free), or not (none); default: the protocol's. split needs calibration items: use modplural run")
    ask.add_argument("--max-new-tokens", type=int, default=None, help="main LLM response length (default: the protocol's, 200)")
    ask.add_argument("--message-tokens", type=int, default=None, help="community message length (default: the protocol's, 200)")
    ask.add_argument("--seed", type=int, default=0, help="seed of the sampled community messages")
    ask.add_argument("--ethos-perspectives", type=int, default=DEFAULT_PERSPECTIVES, help=f"--method ethos: perspectives per question (default {DEFAULT_PERSPECTIVES})")
    ask.add_argument("--json", action="store_true", help="print JSON instead of text")
    ask.set_defaults(func=run)


def _parse_weights(text: str | None):
    if text is None or text in ("uniform", "registry"):
        return text
    try:
        values = tuple(float(w) for w in text.split(","))
    except ValueError as exc:
        raise ModPluralError(f"--weights must be 'uniform', 'registry' or comma-separated numbers, got {text!r}") from exc
    return check_weights(values, "--weights")


def run(args: argparse.Namespace) -> int:
    from modplural.assembly import load
    from modplural.protocol import resolve_protocol
    from modplural.types import Query, check_mode

    mode = check_mode(args.mode)
    for option, value in (("--max-new-tokens", args.max_new_tokens), ("--message-tokens", args.message_tokens)):
        if value is not None:
            check_count(value, option)
    query = Query(args.question, options=tuple(args.option) if args.option else None, attribute=args.attribute, persona=args.persona, weights=_parse_weights(args.weights))
    if mode == "steerable" and query.attribute is None:
        raise ModPluralError("--mode steerable needs --attribute (e.g. --attribute 'the value of autonomy')")
    if mode == "distributional" and query.options is None:
        raise ModPluralError("--mode distributional needs at least two --option values")
    switches = [*args.switch, *([f"calibration={args.calibration}"] if args.calibration else [])]
    protocol = resolve_protocol(options.protocol_spec(args.protocol, switches))
    if protocol.calibration == "split":
        raise ModPluralError("calibration split needs calibration items outside the question asked: use content_free here, or modplural run with calibration_items")
    if protocol.weights == "learned":
        raise ModPluralError("weights learned are fitted on calibration items outside the question asked: use modplural run with calibration_items (or --weights)")
    if args.max_new_tokens is not None:
        protocol = resolve_protocol({"base": protocol, "main_tokens": args.max_new_tokens, "steer_tokens": args.max_new_tokens})
    method = load(args.method, protocol=protocol, seed=args.seed, message_tokens=args.message_tokens, model=args.model, communities=options.names(args.communities),
                  registry=args.registry, servers=args.servers, engine=args.engine, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                  cache=False if args.no_cache else (args.cache or True), ethos_perspectives=args.ethos_perspectives,
                  main_weight_format=args.main_weight_format)
    [result] = method.run(mode, [query])
    main_identity = method.main.adapter_identity(None)
    if args.json:
        print(json.dumps({**result.to_dict(), "main_model": main_identity}, indent=2))
    else:
        print(terminal_safe(f"main LLM: {main_identity}\n{result}"))
    return 0
