"""The ``validate`` job: gather a pack's verified bytes, run the sandbox, store the report, set the state.

Runs in the daemon's job queue (one at a time by default: memory), never in a request. A pack larger
than the validation budget is rejected before any byte is read. Passing packs go straight on to the
curation rule; a pack still waiting for replicas gets a ``curate`` job that retries.

Validation judges the content (the bytes of a CID), so its verdict applies to every listing of the CID
(each model that published it); a listing that becomes available after the content was judged takes
that verdict without running the sandbox again. Curation stays per listing.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_core.errors import MESSAGE_MAX_CHARS, bounded, bounded_report
from model_core.format.digest import Sha256Digest
from pinner.cids import normalize_cid
from registry.accounts.auth import require_namespace
from registry.accounts.principal import Principal
from registry.db.base import utcnow
from registry.db.engine import readonly_session
from registry.db.jobs import Job, JobState
from registry.db.listings import ModelSelector, find_listing, listings_of
from registry.db.models import Manifest, Pack, PackState, Shard, ValidationReport
from registry.gate.config import GateConfig
from registry.gate.curation import CurationService
from registry.gate.errors import ValidationQueueFull, ValidationRefused
from registry.gate.runner import VERDICTS, SandboxRunner, run_sandbox
from registry.gate.shards import FileStore, ShardSpec, ShardUnavailable, gather
from registry.jobs.kinds import JobKind
from registry.jobs.protocol import ClaimedJob, JobQueue, PermanentJobError, RetryJob
from registry.metrics import record_validation
from registry.names import ModelRef
from registry.packs.browse import latest_validation_report
from registry.packs.lifecycle import model_ref_of, set_state
from registry.replication.shard_fetch import ShardFetcher

log = logging.getLogger("modelpack.gate")
VALIDATE_JOB = JobKind.VALIDATE
CURATE_JOB = JobKind.CURATE
SWEEP_JOB = JobKind.CURATE_SWEEP
RUNNING = "running"
# Verdicts that say more about the host than the pack (a busy machine, the host's OOM killer): retried
# with backoff; the pack is rejected only after ``max_environment_failures`` of them in a row.
ENVIRONMENT_FAILURES = frozenset({"timed_out", "out_of_memory", "crashed"})
ENVIRONMENT_RETRY_MAX_S = 3600.0
TOO_LARGE = "pack_too_large"


@dataclass(frozen=True)
class ValidationView:
    cid: str
    state: str
    state_reason: str | None
    flagged: str | None
    verdict: str | None
    reason: str | None
    started_at: datetime | None
    finished_at: datetime | None
    report: dict[str, Any] | None


class ValidationService:
    """Validates packs (job handler + on-demand requests) and reads their reports."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        config: GateConfig,
        curation: CurationService,
        queue: JobQueue | None,
        *,
        store: FileStore | None = None,
        fetcher: ShardFetcher | None = None,
        runner: SandboxRunner = run_sandbox,
    ) -> None:
        self._sessions = sessions
        self.config = config
        self.curation = curation
        self._queue = queue
        self._store = store
        self._fetcher = fetcher
        self._runner = runner

    # -- requests --------------------------------------------------------------------------------

    async def request(self, principal: Principal, cid: str, model: ModelSelector = None) -> int:
        """Enqueue a validation of ``cid`` (a member of the namespace of its listing under ``model``, or an
        admin); returns the job id. The verdict applies to every listing of the CID."""
        async with self._sessions() as s:
            pack = await find_listing(s, cid, model)
            ref = await _ref(s, pack)
            await require_namespace(s, principal, ref.namespace)
            if pack.state is PackState.RECEIVED:
                raise ValidationRefused(
                    f"pack {cid} is still being received; validate it once it is available",
                    cid=cid,
                    state="received",
                )
        if self._queue is None:
            raise ValidationRefused("this registry runs no job queue", cid=cid)
        await self._check_fair_share(principal.publisher)
        # Not the publish flow's key ("validate:<cid>"): a request must not fold into an automatic job,
        # which skips packs that already have a verdict (and every pack when auto_validate is off).
        return await self._queue.enqueue(
            VALIDATE_JOB,
            {"pack": cid, "requested_by": principal.publisher},
            dedupe_key=f"{VALIDATE_JOB}:{cid}:requested",
        )

    async def _check_fair_share(self, publisher: str) -> None:
        """Refuse (429) a publisher's request beyond its share of the queue."""
        limit = self.config.max_queued_per_publisher
        async with self._sessions() as s:
            n = await s.scalar(
                select(func.count())
                .select_from(Job)
                .where(
                    Job.kind == str(VALIDATE_JOB),
                    Job.state.in_((JobState.QUEUED, JobState.RUNNING)),
                    Job.payload["requested_by"].as_string() == publisher,
                )
            )
        if (n or 0) >= limit:
            raise ValidationQueueFull(
                f"publisher {bounded(publisher, 64)!r} already has {n} validations queued or running "
                f"(validation.max_queued_per_publisher = {limit}); request more when they finish",
                queued=n,
                limit=limit,
            )

    async def view(self, cid: str, model: ModelSelector = None) -> ValidationView:
        """The listing's state (under ``model`` when several models list ``cid``) and the content's report."""
        async with readonly_session(self._sessions) as s:
            pack = await find_listing(s, cid, model)
            row = await latest_validation_report(s, cid)
            return ValidationView(
                cid,
                pack.state.value,
                pack.state_reason,
                pack.flagged,
                row.verdict if row else None,
                row.reason if row else None,
                row.started_at if row else None,
                row.finished_at if row else None,
                dict(row.report) if row else None,
            )

    # -- the job ---------------------------------------------------------------------------------

    async def handle_validate(self, job: ClaimedJob) -> None:
        cid = job.payload.get("pack")
        if not isinstance(cid, str):
            raise PermanentJobError(f"validate job {job.id} has no pack CID in its payload")
        requested = "requested_by" in job.payload
        if not requested and not self.config.auto_validate:
            log.info(
                "validation.auto_validate is off: not validating %s (POST /v1/packs/%s/validate)", cid, cid
            )
            return
        await self.validate(
            cid, actor=str(job.payload.get("requested_by") or self.config.actor), again=requested
        )

    async def handle_curate(self, job: ClaimedJob) -> None:
        cid = job.payload.get("pack")
        if not isinstance(cid, str):
            raise PermanentJobError(f"curate job {job.id} has no pack CID in its payload")
        mid = job.payload.get("model_id")
        async with readonly_session(self._sessions) as s:  # no model given (an older job): every listing
            mids = [mid] if isinstance(mid, int) else [p.model_id for p in await listings_of(s, cid)]
        for out in [await self.curation.try_curate(cid, m) for m in mids]:
            if out.status == "waiting_replicas":
                raise RetryJob(
                    f"pack {cid} is not replicated yet: {'; '.join(out.reasons)}", self.config.curate_retry_s
                )

    async def handle_sweep(self, job: ClaimedJob) -> None:
        counts = await self.curation.sweep()
        if counts:
            log.debug("curation sweep: %s", counts)

    async def validate(self, cid: str, *, actor: str | None = None, again: bool = True) -> ValidationView:
        """Validate ``cid`` now (the job's body); returns the stored outcome.

        ``again=False`` (the automatic job) leaves a pack that already has a verdict alone.
        """
        actor = actor or self.config.actor
        async with self._sessions() as s, s.begin():
            listings = await listings_of(s, cid)
            if not listings:
                raise PermanentJobError(f"no pack {cid} to validate")
            if all(p.state is PackState.RECEIVED for p in listings):
                raise RetryJob(f"pack {cid} is not available yet")
            waiting = [p for p in listings if p.state is PackState.AVAILABLE]
            skip = not again and not waiting
            if skip:
                log.info("pack %s is already %s; not validating it again", cid, listings[0].state.value)
            # judged already under another model: the content's verdict stands for the new listing
            prior = await _decisive_report(s, cid) if not again and len(waiting) < len(listings) else None
        first = listings[0].model_id
        if skip:
            return await self.view(cid, first)
        if prior is not None:
            await self._reuse(cid, prior, actor)
            return await self.view(cid, first)
        async with self._sessions() as s, s.begin():
            pack = await s.get(Manifest, cid)
            if pack is None:
                raise PermanentJobError(f"pack {cid} disappeared")
            manifest = bytes(pack.manifest)
            total = pack.total_size
            specs = [
                ShardSpec(
                    sh.filename, normalize_cid(sh.cid), Sha256Digest(sh.sha256), sh.size, sh.unixfs_profile
                )
                for sh in (
                    await s.execute(select(Shard).where(Shard.pack_cid == cid).order_by(Shard.position))
                ).scalars()
            ]
            row = ValidationReport(pack_cid=cid, verdict=RUNNING, reason=None, report={}, started_at=utcnow())
            s.add(row)
            await s.flush()
            row_id = row.id
        started = time.perf_counter()
        budget = self.config.budget
        if not budget.fits(total):
            report: dict[str, Any] = {
                "verdict": "invalid_pack",
                "error_code": TOO_LARGE,
                "reason": (
                    f"the pack needs about {budget.memory_needed(total)} bytes to validate ({total} bytes of "
                    f"shards + {budget.runtime_overhead_bytes} runtime), more than the validation budget of "
                    f"{budget.memory_bytes} bytes (validation.memory_bytes); refused before reading any byte"
                ),
            }
        else:
            report = await self._run(cid, manifest, specs, row_id)
        await self._finish(cid, row_id, report, actor, time.perf_counter() - started)
        return await self.view(cid, first)

    async def _run(self, cid: str, manifest: bytes, specs: list[ShardSpec], row_id: int) -> dict[str, Any]:
        work = await asyncio.to_thread(_work_dir, self.config.work_dir)
        try:
            try:
                gathered = await gather(
                    work / "pack", manifest, specs, self._store, self._fetcher, self.config.fetch_timeout_s
                )
            except ShardUnavailable as e:
                raise RetryJob(f"pack {cid}: {e}") from None
            report = await self._runner(
                work / "pack", work / "report.json", self.config.budget, gathered.allowed_roots
            )
            report["shard_sources"] = gathered.sources
            return report
        except BaseException:
            await self._drop_running(row_id)
            raise
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _drop_running(self, row_id: int) -> None:
        async with self._sessions() as s, s.begin():
            row = await s.get(ValidationReport, row_id)
            if row is not None and row.verdict == RUNNING:
                await s.delete(row)

    async def _finish(self, cid: str, row_id: int, report: dict[str, Any], actor: str, secs: float) -> None:
        verdict = bounded(report.get("verdict"), 64)
        reason = bounded(report.get("reason") or verdict, MESSAGE_MAX_CHARS)
        report = bounded_report(report)
        passed = verdict == "pass"
        retry: RetryJob | None = None
        async with self._sessions() as s, s.begin():
            row = await s.get(ValidationReport, row_id)
            listings = await listings_of(s, cid, for_update=True)
            if row is None or not listings:
                return
            row.verdict = verdict
            row.reason = reason
            row.report = report
            row.finished_at = utcnow()
            in_a_row = await self._environment_failures(s, cid) if verdict in ENVIRONMENT_FAILURES else 0
            limit = self.config.max_environment_failures
            if in_a_row:
                reason = f"{reason} (environment failure {in_a_row} of {limit} in a row)"
                row.reason = reason
            if 0 < in_a_row < limit:
                delay = min(self.config.environment_retry_s * 2 ** (in_a_row - 1), ENVIRONMENT_RETRY_MAX_S)
                retry = RetryJob(
                    f"pack {cid}: validation {verdict}, retrying in {delay:g} s: {reason}", delay
                )
            else:
                await self._apply(s, listings, verdict, reason, actor)
        record_validation(verdict if verdict in VERDICTS else "other", secs)
        log.info("pack %s: validation %s (%s)", cid, verdict, reason)
        if retry is not None:  # not the pack's fault (yet): no state change, the job runs again later
            raise retry
        if passed:
            await self._curate(cid, [p.model_id for p in listings])

    async def _reuse(self, cid: str, prior: ValidationReport, actor: str) -> None:
        """Apply the content's decisive verdict to its listings that are waiting for one."""
        async with self._sessions() as s, s.begin():
            listings = await listings_of(s, cid, for_update=True)
            waiting = [p for p in listings if p.state is PackState.AVAILABLE]
            await self._apply(s, waiting, prior.verdict, prior.reason or prior.verdict, actor)
        log.info("pack %s: validation %s for %d more listing(s)", cid, prior.verdict, len(waiting))
        if prior.verdict == "pass":
            await self._curate(cid, [p.model_id for p in waiting])

    async def _apply(
        self, s: AsyncSession, listings: list[Pack], verdict: str, reason: str, actor: str
    ) -> None:
        """The verdict on the content, applied to each listing (one still receiving its bytes waits)."""
        for pack in listings:
            if pack.state is PackState.RECEIVED:
                continue
            if verdict == "pass":
                if pack.state is not PackState.CURATED:
                    await set_state(s, pack, PackState.VALIDATED, f"validation passed: {reason}", actor)
                continue
            why = f"validation failed ({verdict}): {reason}"
            if pack.state is PackState.CURATED:
                kind = {"invalid_pack": "invalid", "behavior_failed": "behavior_failed"}.get(
                    verdict, "smoke_failed"
                )
                await self.curation.degrade(s, pack, await _ref(s, pack), why, actor, kind)
            await set_state(s, pack, PackState.REJECTED, why, actor)

    async def _curate(self, cid: str, model_ids: list[int]) -> None:
        """Try the curation rule for each listing; a curate job retries the ones waiting for replicas."""
        single = len(model_ids) == 1
        for mid in model_ids:
            out = await self.curation.try_curate(cid, mid)
            if out.status == "waiting_replicas" and self._queue is not None:
                await self._queue.enqueue(
                    CURATE_JOB,
                    {"pack": cid} if single else {"pack": cid, "model_id": mid},
                    dedupe_key=f"{CURATE_JOB}:{cid}" if single else f"{CURATE_JOB}:{cid}@{mid}",
                    max_attempts=self.config.curate_max_attempts,
                )

    async def _environment_failures(self, s: AsyncSession, cid: str) -> int:
        """How many of the pack's latest finished validations in a row were environment failures."""
        verdicts = (
            await s.execute(
                select(ValidationReport.verdict)
                .where(ValidationReport.pack_cid == cid, ValidationReport.verdict != RUNNING)
                .order_by(ValidationReport.id.desc())
                .limit(self.config.max_environment_failures)
            )
        ).scalars()
        n = 0
        for v in verdicts:
            if v not in ENVIRONMENT_FAILURES:
                break
            n += 1
        return n


def _work_dir(base: Path | None) -> Path:
    """A fresh folder for one validation (links to the shards, fetched copies, the report)."""
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="validate-", dir=base))


async def _decisive_report(s: AsyncSession, cid: str) -> ValidationReport | None:
    """The content's newest finished report when it is a verdict on the pack (not the host's failure)."""
    row = (
        await s.execute(
            select(ValidationReport)
            .where(ValidationReport.pack_cid == cid, ValidationReport.verdict != RUNNING)
            .order_by(ValidationReport.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return row if row is not None and row.verdict not in ENVIRONMENT_FAILURES else None


async def _ref(s: AsyncSession, pack: Pack) -> ModelRef:
    return await model_ref_of(s, pack.model_id)
