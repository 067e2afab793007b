"""The Slack app: `/train` through bolt on Lambda behind a Function URL. Acks at once; the work runs in lazy listeners.

The ack path makes no AWS or Slack call (Slack wants its answer within 3 s, and a cold start has spent part of
that): it parses the text, answers what needs no data itself, and names the job a train command creates. Lazy
listeners (bolt re-invokes this function asynchronously) check the caps, record the job, post its card and put
`Job Queued` on the bus; look jobs up (status, list, weights, cost) and answer through the response_url; or, for
`/train cancel` and the card's Cancel button, check who asks and put `Job Cancel Requested` on the bus (the
control plane cancels: the bot never changes a job's status).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from slack_bolt import Ack, App, Respond
from slack_bolt.adapter.aws_lambda import SlackRequestHandler
from slack_bolt.adapter.aws_lambda.lazy_listener_runner import LambdaLazyListenerRunner
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import commands, rules, views
from bot.commands import (
    CancelCommand,
    Command,
    CommandError,
    CostCommand,
    DatasetsCommand,
    ListCommand,
    ModelsCommand,
    PlannedCommand,
    StatusCommand,
    TrainCommand,
    WeightsCommand,
)
from bot.settings import AppSettings
from bot.slack import SlackCredentials, load_credentials, web_client, weights_link
from spotter import cost, spec
from spotter.events import Bus, JobCancelRequested, JobQueued
from spotter.store import DuplicateJob, Failure, JobNotFound, JobRecord, JobsStore, SlackRef

logger = Logger()

UNREACHABLE_CHANNEL = frozenset({"not_in_channel", "channel_not_found"})
LIST_LIMIT = 10
COST_DAYS = 30


class NoWeights(Exception):
    """`/train weights` for a job that has not produced any."""

    def __init__(self, record: JobRecord) -> None:
        super().__init__(f"job {record.job_id} has no weights")
        self.record = record


def user_message(error: Exception, job_id: str | None = None) -> str:
    """What the person who typed the command reads about `error`: the one place errors become words."""
    if isinstance(error, CommandError):
        return str(error)
    if isinstance(error, JobNotFound):
        return f"There is no job `{error.job_id}` in this channel. `/train list` shows this channel's jobs."
    if isinstance(error, NoWeights):
        rec = error.record
        state = views.STATUS[rec.status][1].lower()
        return f"Job `{rec.job_id}` has no weights to download (it is {state}). `/train status {rec.job_id}` shows it."
    not_started = f"Job `{job_id}` was not started: " if job_id else ""
    if isinstance(error, SlackApiError) and error.response.get("error") in UNREACHABLE_CHANNEL:
        return (
            f"{not_started}I can't post in this channel. Invite me with `/invite @Spotter`, then run the command again."
        )
    if job_id:
        return f"{not_started}something went wrong on Spotter's side ({type(error).__name__}). Try again in a minute."
    return f"Something went wrong on Spotter's side ({type(error).__name__}). Try again in a minute."


def job_seed(body: dict[str, Any]) -> str:
    """The same request (a Slack retry, a replay) always gets the same seed, hence the same job id."""
    return f"{body.get('team_id', '')}{body.get('trigger_id', '')}"


def _parsed(body: dict[str, Any]) -> Command | CommandError:
    try:
        return commands.parse(body.get("text") or "")
    except CommandError as e:
        return e


def _kind_is(*kinds: str) -> Callable[..., bool]:
    """A listener matcher: the command text parses into one of these kinds."""

    def matches(body: dict[str, Any]) -> bool:
        parsed = _parsed(body)
        return not isinstance(parsed, CommandError) and parsed.kind in kinds

    return matches


# -- acks: pure, no AWS or Slack call --------------------------------------------------------------------------


def ack_train(ack: Ack, body: dict[str, Any]) -> None:
    cmd = _parsed(body)
    if not isinstance(cmd, TrainCommand):
        raise TypeError("ack_train runs for train commands only (see its matcher)")
    job_id = spec.new_job_id(cmd.dataset, seed=job_seed(body))
    ack(response_type="ephemeral", **views.queued_message(cmd, job_id))


def ack_lookup(ack: Ack) -> None:
    """The answer needs the jobs table: it comes from the lazy listener through respond()."""
    ack()


def answer(ack: Ack, body: dict[str, Any]) -> None:
    """Everything that needs no data: help, datasets, models, commands to come, and text that is not a command."""
    parsed = _parsed(body)
    if isinstance(parsed, CommandError):
        message = views.error_message(user_message(parsed))
    elif isinstance(parsed, PlannedCommand):
        message = views.not_available(parsed.name)
    elif isinstance(parsed, DatasetsCommand):
        message = views.datasets_message()
    elif isinstance(parsed, ModelsCommand):
        message = views.models_message()
    else:
        message = views.help_message()
    ack(response_type="ephemeral", **message)


def ack_link_click(ack: Ack) -> None:
    """The download button is a plain link; Slack still reports the click, and an unanswered one shows an error."""
    ack()


def ack_cancel_click(ack: Ack) -> None:
    """The Cancel button (confirmed in Slack's dialog): who may cancel is decided in the lazy listener."""
    ack()


# -- lazy listeners --------------------------------------------------------------------------------------------


class Jobs:
    """The lazy listeners and what they need: the jobs table, the bus, the settings."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.store = JobsStore(settings.jobs_table)
        self.bus = Bus(settings.bus_name)

    def queue_job(self, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        """Record the job, post its card, put `Job Queued`; a replayed request finds its job and does nothing."""
        named: str | None = None  # the id the ack announced
        job_id: str | None = None  # set once the job is recorded
        try:
            cmd = _parsed(body)
            if not isinstance(cmd, TrainCommand):
                raise TypeError("queue_job runs for train commands only (see its matcher)")
            seed = job_seed(body)
            job_spec = spec.build_spec(
                cmd.dataset,
                cmd.model,
                list(cmd.options),
                requested_by=body["user_id"],
                channel=body["channel_id"],
                seed=seed,
            )
            named = job_spec.job_id
            existing = self.store.find(named)
            if existing is not None and existing.trigger == seed:
                logger.info("replayed request: the job exists, nothing more to do", job_id=named)
                return
            refusal = self._over_cap(named, job_spec.channel)
            if refusal is not None:
                respond(response_type="ephemeral", **refusal)
                return
            try:
                rec = self.store.create(job_spec, trigger=seed)
            except DuplicateJob as e:
                logger.info("replayed request: the job exists, nothing more to do", job_id=e.existing.job_id)
                return
            job_id = rec.job_id
            self._announce(rec, client)
        except Exception as e:
            logger.exception("could not queue the job", job_id=job_id or named)
            if job_id is not None:
                self._fail(job_id, e, client)
            respond(response_type="ephemeral", **views.error_message(user_message(e, named)))

    def _over_cap(self, job_id: str, channel: str) -> views.Message | None:
        """The refusal of a job that would go over a cap (the launcher checks again before it asks EC2)."""
        now = time.time()
        active = self.store.list_active()
        spent = cost.spend_since(self.store.list_since(cost.day_start(now)), now)
        cap = rules.cap_reached(
            len(active),
            spent,
            max_instances=self.settings.max_concurrent_instances,
            max_daily_usd=self.settings.max_daily_spend_usd,
        )
        if cap is None:
            return None
        logger.info("refused: over a cap", job_id=job_id, cap=cap.cap, current=cap.current, limit=cap.limit)
        return views.cap_message(job_id, cap, [r.job_id for r in active if r.channel == channel])

    def _announce(self, rec: JobRecord, client: WebClient) -> None:
        card = client.chat_postMessage(channel=rec.channel, **views.job_card(rec, now=time.time()))
        ref = SlackRef(channel=str(card["channel"]), card_ts=str(card["ts"]), thread_ts=str(card["ts"]))
        self.store.set_slack(rec.job_id, ref)
        self.bus.put(JobQueued(job_id=rec.job_id))
        logger.info("job queued", job_id=rec.job_id, channel=ref.channel)

    def _fail(self, job_id: str, error: Exception, client: WebClient) -> None:
        """No job stays QUEUED without `Job Queued` on the bus: mark it failed, and say so on its card if it has one."""
        kind = str(error.response.get("error")) if isinstance(error, SlackApiError) else type(error).__name__
        failure = Failure(phase="queue", kind=kind, message=user_message(error, job_id))
        try:
            rec = self.store.mark_failed(job_id, failure)
            if rec.slack is not None:
                client.chat_update(
                    channel=rec.slack.channel, ts=rec.slack.card_ts, **views.job_card(rec, now=time.time())
                )
        except Exception:
            logger.exception("could not record the failure", job_id=job_id)

    def look_up(self, body: dict[str, Any], respond: Respond) -> None:
        """Answer status, list and weights from the jobs table, to the person who asked."""
        try:
            message = self._look_up(_parsed(body), body["channel_id"])
        except (JobNotFound, NoWeights) as e:
            message = views.error_message(user_message(e))
        except Exception as e:
            logger.exception("could not answer a lookup")
            message = views.error_message(user_message(e))
        respond(response_type="ephemeral", **message)

    def _look_up(self, cmd: Command | CommandError, channel: str) -> views.Message:
        now = time.time()
        if isinstance(cmd, CostCommand):
            if cmd.job_id is not None:
                return views.job_cost_message(self._job(cmd.job_id, channel), now)
            records = self.store.list_since(cost.days_ago(now, COST_DAYS), channel)
            return views.channel_cost_message(records, now, COST_DAYS)
        if isinstance(cmd, ListCommand):
            return views.job_list(self.store.list_channel(channel, LIST_LIMIT), now)
        if isinstance(cmd, StatusCommand):
            if cmd.job_id is None:
                latest = self.store.list_channel(channel, 1)
                if not latest:
                    return views.job_list([], now)
                rec = latest[0]
            else:
                rec = self._job(cmd.job_id, channel)
            link = weights_link(rec, self.settings)
            return views.job_card(rec, now=now, weights_url=link[1] if link else None)
        if isinstance(cmd, WeightsCommand):
            rec = self._job(cmd.job_id, channel)
            link = weights_link(rec, self.settings)
            if link is None:
                raise NoWeights(rec)
            return views.weights_message(rec, *link, expires_in=self.settings.presign_seconds)
        raise TypeError("look_up runs for status, list, weights and cost only (see its matcher)")

    def cancel(self, body: dict[str, Any], respond: Respond) -> None:
        """`/train cancel <job>`."""
        cmd = _parsed(body)
        if not isinstance(cmd, CancelCommand):
            raise TypeError("cancel runs for cancel commands only (see its matcher)")
        message = self._cancel(cmd.job_id, body["channel_id"], body["user_id"])
        respond(response_type="ephemeral", **message)

    def cancel_click(self, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """The card's Cancel button: the same decision as `/train cancel`, answered to the person who clicked."""
        job_id = str(body["actions"][0]["value"])
        channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id"))
        user = str(body["user"]["id"])
        message = self._cancel(job_id, channel, user)
        if body.get("response_url"):
            respond(response_type="ephemeral", replace_original=False, **message)
        else:
            client.chat_postEphemeral(channel=channel, user=user, **message)

    def _cancel(self, job_id: str, channel: str, user: str) -> views.Message:
        """Ask the control plane to cancel, if `user` may: the bot never changes the job's status itself."""
        try:
            rec = self._job(job_id, channel)
            refused = rules.cancel_refused(rec, user, self.settings.admins)
            if refused is not None:
                logger.info("cancel refused", job_id=job_id, user=user, reason=refused.reason)
                return views.cancel_refused_message(rec, refused, self.settings.admins, time.time())
            self.bus.put(JobCancelRequested(job_id=rec.job_id, attempt=max(1, rec.attempt), by=user))
            logger.info("cancel requested", job_id=job_id, user=user)
            return views.cancelling_message(rec)
        except JobNotFound as e:
            return views.error_message(user_message(e))
        except Exception as e:
            logger.exception("could not request the cancel", job_id=job_id)
            return views.error_message(user_message(e))

    def _job(self, job_id: str, channel: str) -> JobRecord:
        """A job of this channel: ids are short and guessable, and a private channel's jobs stay in it."""
        rec = self.store.get(job_id)
        if rec.channel != channel:
            raise JobNotFound(job_id)
        return rec


def _authorize(creds: SlackCredentials) -> Callable[..., AuthorizeResult]:
    """One workspace, one bot token: authorization is the secret itself, with no auth.test round trip."""

    def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=enterprise_id, team_id=team_id, bot_token=creds.bot_token.get_secret_value()
        )

    return authorize


def build_app(settings: AppSettings, creds: SlackCredentials, *, lambda_client: Any = None) -> App:
    """The bolt app. Lazy listeners re-invoke this function through `lambda_client` (boto3's Lambda client if None)."""
    app = App(
        # Not "spotter": bolt configures a stdlib logger of its name from the root logger, and "spotter" is
        # Powertools' logger (the service name), whose level would be lost.
        name="spotter-slack",
        process_before_response=True,
        signing_secret=creds.signing_secret.get_secret_value(),
        authorize=_authorize(creds),
        client=web_client(None, settings),  # the token comes with each request, from authorize
    )
    jobs = Jobs(settings)
    # bolt starts every lazy listener of the matching listener: matchers keep help from re-invoking the function.
    app.command("/train", matchers=[_kind_is("train")])(ack=ack_train, lazy=[jobs.queue_job])
    app.command("/train", matchers=[_kind_is("status", "list", "weights", "cost")])(ack=ack_lookup, lazy=[jobs.look_up])
    app.command("/train", matchers=[_kind_is("cancel")])(ack=ack_lookup, lazy=[jobs.cancel])
    app.command("/train")(answer)
    app.action(views.DOWNLOAD_ACTION)(ack_link_click)
    app.action(views.CANCEL_ACTION)(ack=ack_cancel_click, lazy=[jobs.cancel_click])
    app.listener_runner.lazy_listener_runner = LambdaLazyListenerRunner(app.logger, lambda_client)
    return app


_lambda_client: Any = None  # None: boto3's
_adapter: SlackRequestHandler | None = None


def set_lambda_client(client: Any) -> None:
    """Re-invoke lazy listeners through `client` (the local stack's in-process stand-in); the next request builds
    the app again with it."""
    global _lambda_client, _adapter
    _lambda_client, _adapter = client, None


def _cold_start() -> SlackRequestHandler:
    """Settings and the secret are read once per process, here."""
    global _adapter
    settings = AppSettings.from_env()
    app = build_app(settings, load_credentials(settings), lambda_client=_lambda_client)
    runner = app.listener_runner.lazy_listener_runner
    _adapter = SlackRequestHandler(app)
    # The adapter puts in a Lambda lazy runner of its own; keep build_app's, which knows the Lambda client to use.
    app.listener_runner.lazy_listener_runner = runner
    return _adapter


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return (_adapter or _cold_start()).handle(event, context)
