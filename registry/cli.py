"""The ``torchtrust`` command line.

Only click and the table of kinds are imported at module level: ``torchtrust --help`` never imports torch or any plugin.
Errors are one line on stderr with a non-zero exit code; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys

import click

from toolkit_core.kinds import KIND_NAMES as KIND_CHOICES  # the table of kinds; imports no torch


class _Group(click.Group):
    """Turns any exception into one readable line (unless ``--debug``)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001
            if ctx.obj and ctx.obj.get("debug"):
                raise
            text = str(exc).strip() or type(exc).__name__
            if getattr(exc, "problems", None):  # a config error lists every problem, one per line
                click.echo(f"Error: {text}", err=True)
            else:
                click.echo(f"Error: {text.splitlines()[0]} (run with --debug for the traceback)", err=True)
            ctx.exit(1)


def _console():
    from rich.console import Console

    return Console()


def _manager():
    from registry import get_manager

    return get_manager()


def _catalog() -> dict:
    """What list / info / plugins show: from the process's manager if one exists (tests, notebooks),
    else from the catalog cache (no plugin or torch import while it is current; see catalog_cache)."""
    from registry import catalog_cache
    from registry import manager as manager_module

    current = getattr(manager_module, "_default", None)
    if current is not None:
        return catalog_cache.snapshot(current)
    return catalog_cache.load_or_build(lambda: catalog_cache.snapshot(_manager()))


def _check_selection(cat: dict) -> None:
    """Unknown names in TORCHTRUST_PLUGINS / TORCHTRUST_DISABLE_PLUGINS are an error, cached or not."""
    if cat.get("problems"):
        from toolkit_core.errors import PluginSelectionError

        raise PluginSelectionError("; ".join(cat["problems"]))


def _json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="torchtrust", prog_name="torchtrust")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """torchtrust: attribution, robustness, generative priors and generalization metrics, as plugins.

    \b
    torchtrust list --kind attribution     installed methods of one kind
    torchtrust info gbp                     parameters, citation, kernels of a method
    torchtrust plugins                      what is installed, loaded, failed or disabled
    torchtrust doctor                       environment check (exit 1 if a plugin failed)
    torchtrust new-plugin NAME --kind K     scaffold a plugin package of your own
    torchtrust run [CONFIG.toml]            the main job: composed experiments with an HTML report
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@cli.command("list")
@click.option("--kind", type=click.Choice(KIND_CHOICES), help="Only methods of this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@click.argument("pattern", required=False)
def list_cmd(kind: str | None, as_json: bool, pattern: str | None) -> None:
    """List installed methods (optionally matching a glob PATTERN, e.g. 'lrp*')."""
    import fnmatch

    cat = _catalog()
    _check_selection(cat)
    names = sorted(n for n, m in cat["methods"].items() if kind is None or m["info"]["kind"] == kind)
    if pattern:
        names = fnmatch.filter(names, pattern)
    infos = [cat["methods"][n]["info"] for n in names]
    rows = [
        {"name": i["name"], "kind": i["kind"], "plugin": i["provider"], "version": i["version"],
         "summary": i["summary"]}
        for i in infos
    ]
    if as_json:
        _json(rows)
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} method(s)" + (f" of kind {kind}" if kind else ""))
    for col in ("name", "kind", "plugin", "version", "summary"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*(r[c] for c in ("name", "kind", "plugin", "version", "summary")))
    _console().print(table)
    failed = [p for p in cat["plugins"] if p["status"] == "failed"]
    if failed:
        click.echo(f"{len(failed)} plugin(s) failed to load; see `torchtrust plugins`.", err=True)


@cli.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_cmd(name: str, as_json: bool) -> None:
    """Describe method NAME: summary, citation, parameters, kernels and their backends here."""
    from toolkit_core.errors import UnknownMethodError

    cat = _catalog()
    _check_selection(cat)
    entry = cat["methods"].get(name)
    if entry is None:  # the loaded catalog says why (ambiguous, disabled, did-you-mean)
        _manager().get_info(name)
        raise UnknownMethodError(name, cat["methods"])
    info, kinfo = entry["info"], entry["kernels"]
    data = {**info, "kernels": kinfo}
    if as_json:
        _json(data)
        return
    from rich.table import Table

    con = _console()
    con.print(f"[bold]{info['name']}[/bold] ({info['kind']}) - {info['summary']}")
    con.print(f"citation: {info['citation']}")
    con.print(f"provider: {info['provider']} {info['version']} (entry point '{info['plugin']}')")
    if info["parameters"]:
        t = Table(title="parameters")
        for col in ("name", "type", "default"):
            t.add_column(col)
        for p in info["parameters"]:
            t.add_row(p["name"], p["type"], "(required)" if p["required"] else entry["default_reprs"][p["name"]])
        con.print(t)
    else:
        con.print("parameters: none")
    for k in kinfo:
        con.print(f"kernel {k['name']}: cpu -> {k['backend_cpu']}, cuda -> {k['backend_cuda']}")


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_cmd(as_json: bool) -> None:
    """Show every plugin distribution: version, status (loaded/failed/disabled), error, methods."""
    cat = _catalog()
    records = cat["plugins"]
    for problem in cat.get("problems", []):
        click.echo(f"Error: {problem}", err=True)
    if as_json:
        _json(records)
        if cat.get("problems"):
            sys.exit(1)
        return
    from rich.table import Table

    t = Table(title=f"{len(records)} plugin(s)")
    for col in ("plugin", "distribution", "version", "status", "methods / error"):
        t.add_column(col, overflow="fold")
    colors = {"loaded": "green", "failed": "red", "disabled": "yellow"}
    for r in records:
        detail = r["error"] if r["status"] == "failed" else ", ".join(r["methods"])
        t.add_row(r["name"], r["distribution"], r["version"], f"[{colors[r['status']]}]{r['status']}[/]",
                  detail or "")
    _console().print(t)
    if cat.get("problems"):
        sys.exit(1)


@cli.command("doctor")
def doctor_cmd() -> None:
    """Check torch, CUDA, Triton, kernel backends and plugins. Exit code 1 if a plugin failed."""
    import platform

    import torch

    from toolkit_core import kernels

    con = _console()
    con.print(f"python {platform.python_version()}, torch {torch.__version__}")
    cuda = torch.cuda.is_available()
    con.print(f"CUDA: {'available, ' + torch.cuda.get_device_name(0) if cuda else 'not available (CPU only)'}")
    if kernels.triton_available():
        import triton

        con.print(f"Triton: {triton.__version__}" + ("" if cuda else " (kernels run on CUDA tensors only; "
                                                       "TRITON_INTERPRET=1 runs them on CPU for tests)"))
    else:
        con.print("Triton: not installed (every kernel uses its PyTorch reference)")
    try:
        con.print(f"TORCHTRUST_KERNELS={kernels.requested_backend()}")
    except ValueError as exc:
        con.print(f"[red]{exc}[/]")
    mgr = _manager()
    device = "cuda" if cuda else "cpu"
    for name, k in sorted(kernels.all_kernels().items()):
        con.print(f"  kernel {name}: {k.describe_backend(device)} on {device}")
    records = list(mgr.plugins.values())
    loaded = [r for r in records if r.status == "loaded"]
    mgr.load()
    for problem in mgr.problems:
        con.print(f"[red]PROBLEM[/] {problem}")
    if mgr.problems:
        sys.exit(1)
    names = mgr.list_methods()
    con.print(f"plugins: {len(loaded)} loaded, {len(mgr.failed)} failed, "
              f"{sum(r.status == 'disabled' for r in records)} disabled; {len(names)} methods")
    for r in mgr.failed:
        con.print(f"[red]FAILED[/] {r.name} ({r.distribution} {r.version}): {r.error}")
    broken = _create_every_method(mgr, names)
    for name, error in broken.items():
        con.print(f"[red]FAILED[/] method {name} cannot be created with its defaults: {error}")
    if not names:
        con.print("[red]no methods are installed[/]: install plugins or fix TORCHTRUST_PLUGINS")
    if mgr.failed or broken or not names:
        sys.exit(1)
    con.print("[green]all good[/]")


def _create_every_method(mgr, names: list[str]) -> dict[str, str]:
    """Create each method with its defaults (its contract parameters where it needs some): name -> error."""
    broken = {}
    for name in names:
        try:
            info = mgr.get_info(name)
            mgr.create(name, **info.cls.contract_params())
        except BaseException as exc:  # noqa: BLE001 - also SystemExit from plugin code
            if isinstance(exc, KeyboardInterrupt):
                raise
            broken[name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return broken


@cli.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(KIND_CHOICES), required=True, help="Kind of method.")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Folder of the new package (default ./torchtrust-NAME).")
def new_plugin_cmd(name: str, kind: str, directory: str | None) -> None:
    """Write a separately installable plugin package for a method NAME of kind KIND."""
    from .scaffold import write_plugin

    root = write_plugin(name, kind, directory)
    click.echo(f"wrote plugin '{name}' ({kind}) to {root}")
    click.echo(f"next: pip install -e {root} && pytest {root}/tests")


@cli.command("run")
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", default="torchtrust-report", show_default=True,
              help="Report folder: new, empty, or written by torchtrust before.")
@click.option("--force", is_flag=True, help="Write into a non-empty folder torchtrust did not make.")
@click.option("--device", default=None, metavar="cpu|cuda|cuda:N",
              help="Overrides the config's device (default: the config's, else cpu). Under torchrun each rank "
                   "uses cuda:LOCAL_RANK.")
@click.option("--quick", is_flag=True, help="A smaller, faster version of the experiment.")
@click.option("--seed", type=int, default=None, help="Overrides the config's seed (default: the config's, else 0).")
@click.option("--precision", default=None, type=click.Choice(["fp32", "bf16", "fp16"]),
              help="Overrides the config's precision (default: the config's, else fp32): autocast in training, "
                   "attacks and metrics; attribution always runs in float32; fp16 needs CUDA.")
def run_cmd(config: str | None, out_dir: str, force: bool, device: str | None, quick: bool, seed: int | None,
            precision: str | None) -> None:
    """Run an experiment from CONFIG (TOML), or the embedded default one, and write a report."""
    from toolkit_core.experiment import run_from_cli

    run_from_cli(config, out_dir=out_dir, device=device, quick=quick, seed=seed, force=force, precision=precision)


def main() -> None:
    cli(prog_name="torchtrust")


if __name__ == "__main__":  # pragma: no cover
    main()
