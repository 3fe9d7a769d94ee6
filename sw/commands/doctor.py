"""``tritile doctor``: show each external tool, its version and where it came from."""

import json
import sys


def register(subparsers):
    parser = subparsers.add_parser(
        "doctor", help="check the toolchain (Verilator, yosys, nextpnr, packers)",
        description="Find every external tool tritile uses and print its version and "
                    "origin. Exits with status 1 when a required tool is missing. The first "
                    "run of a YoWASP tool compiles it, which takes about a minute per tool.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args):
    from ..toolchain import survey

    if not args.json:
        print("checking tools (a YoWASP tool compiles itself on its first run)...",
              file=sys.stderr, flush=True)
    tools = survey()
    missing = [tool for tool in tools if tool.required and not tool.found]
    if args.json:
        print(json.dumps({"ok": not missing, "tools": [
            {"name": t.name, "found": t.found, "path": t.path, "version": t.version,
             "source": t.source, "required": t.required} for t in tools]}, indent=2))
    else:
        width = max(len(tool.name) for tool in tools)
        for tool in tools:
            mark = "ok" if tool.found else ("MISSING" if tool.required else "absent")
            detail = f"{tool.version or ''}  [{tool.source}]  {tool.path or ''}"
            print(f"{mark:>7}  {tool.name:<{width}}  {detail.strip()}")
        for tool in missing:
            print(f"fix: {tool.name}: {tool.fix}")
        optional = [tool.name for tool in tools if not tool.required and not tool.found]
        if optional:
            print(f"note: {', '.join(optional)} only matter for `tritile program` "
                  f"on a real board")
        print("all required tools found" if not missing
              else f"{len(missing)} required tool(s) missing")
    return 1 if missing else 0
