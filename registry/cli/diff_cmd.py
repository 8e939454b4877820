"""``modelpack diff A B``: how far pack B's behaviour is from pack A's, by their validation fingerprints.

A and B are pack CIDs or ``ns/model[@tag]`` references; each pack's newest validation report is fetched from
the registry and the fingerprints are compared (top-1 agreement, mean and max KL(A || B) over the probe rows).
Exit 0 with the comparison; 1 with a sentence when a report or a fingerprint is missing or the probes differ.
"""

from __future__ import annotations

from typing import Any

import click

from model_core.format.fingerprint import FingerprintMismatch, compare_fingerprints
from registry.cli.options import connect, remote_options
from registry.cli.output import emit, errors
from registry.client import RegistryClient
from registry.errors import RegistryError
from registry.names import parse_ref


def _fingerprint(client: RegistryClient, ref: str) -> tuple[str, dict[str, Any]]:
    """The pack's CID and its newest report's fingerprint, or ClickException saying what is missing."""
    try:
        parsed = parse_ref(ref)
    except RegistryError as e:
        raise click.UsageError(e.message) from None
    model = str(parsed.model) if parsed.model is not None else None
    cid = parsed.cid if parsed.cid is not None else str(client.resolve(str(parsed.model), parsed.tag)["cid"])
    view = client.validation(cid, model=model)
    run = view.get("validation") or {}
    report = run.get("report") if isinstance(run.get("report"), dict) else None
    if report is None:
        raise click.ClickException(f"pack {cid} ({ref}) has no validation report yet")
    fp = report.get("fingerprint")
    if not isinstance(fp, dict):
        why = report.get("fingerprint_error")
        raise click.ClickException(
            f"the validation report of pack {cid} ({ref}) has no behavioural fingerprint"
            + (f": {str(why)[:200]}" if why else "")
        )
    return cid, fp


@click.command()
@click.argument("a")
@click.argument("b")
@remote_options()
def diff(a: str, b: str, registry: str, token: str | None, as_json: bool) -> None:
    """Compare the behavioural fingerprints of packs A and B (CIDs or NS/MODEL[@TAG]): top-1 agreement and
    KL(A || B) on the fixed probe inputs."""
    with errors(with_request=True), connect(registry, token) as client:
        cid_a, fp_a = _fingerprint(client, a)
        cid_b, fp_b = _fingerprint(client, b)
    try:
        result = compare_fingerprints(fp_a, fp_b).to_dict()
    except FingerprintMismatch as e:
        raise click.ClickException(f"{cid_a} and {cid_b} cannot be compared: {e.message}") from None
    data = {"a": cid_a, "b": cid_b, **result}

    def human() -> None:
        click.echo(f"A {cid_a}\nB {cid_b}")
        click.echo(f"top-1 agreement  {result['top1_agreement']:.4f}")
        click.echo(f"mean KL(A||B)    {result['mean_kl']:.4f} nats")
        click.echo(f"max KL(A||B)     {result['max_kl']:.4f} nats")
        click.echo(f"probe rows       {result['rows']}")

    emit(as_json, data, human)
