"""The Slack app: `/train` through bolt on Lambda behind a Function URL. Acks at once; the work runs in lazy listeners.

The ack path makes no AWS or Slack call (Slack wants its answer within 3 s, and a cold start has spent part of
that): it parses the text, answers what needs no data itself, refuses what the access rules refuse without
knowing the person's user groups, and names the job a train command creates. Lazy listeners (bolt re-invokes
this function asynchronously) check access with the user groups, start jobs (bot.starter), look jobs up (status,
list, logs, weights, cost) and manage schedules, answering through the response_url; `/train cancel` and the
card's Cancel button put `Job Cancel Requested` on the bus (the control plane cancels: the bot never changes a
job's status). Slack's retries of a request (`X-Slack-Retry-Num`) and double clicks name the same job or
schedule, so they never start a second one.
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

from bot import answers, commands, rules, views
from bot.access import GroupMembers
from bot.commands import (
    CancelCommand,
    Command,
    CommandError,
    CostCommand,
    DatasetsCommand,
    ListCommand,
    LogsCommand,
    ModelsCommand,
    PromotedWeightsCommand,
    ScheduleCommand,
    SchedulesCommand,
    StatusCommand,
    TrainCommand,
    UnscheduleCommand,
    WeightsCommand,
)
from bot.logs import log_view
from bot.schedules import ScheduledRun, ScheduleError, Schedules, ScheduleSettings
from bot.settings import AppSettings
from bot.slack import SlackCredentials, load_credentials, web_client, weights_link, weights_links
from bot.starter import Starter, StartFailed
from spotter import cost, spec
from spotter.aws import client as aws_client
from spotter.events import Bus, JobCancelRequested
from spotter.models import ModelRegistry
from spotter.store import JobNotFound, JobRecord, JobsStore

logger = Logger()

UNREACHABLE_CHANNEL = frozenset({"not_in_channel", "channel_not_found"})
LIST_LIMIT = 10
COST_DAYS = 30
LOOKUPS = ("status", "list", "weights", "promoted_weights", "cost", "logs")
SCHEDULING = ("schedule", "schedules", "unschedule")


class NoWeights(Exception):
    """`/train weights` for a job that has not produced any."""

    def __init__(self, record: JobRecord) -> None:
        super().__init__(f"job {record.job_id} has no weights")
        self.record = record


def user_message(error: Exception, job_id: str | None = None) -> str:
    """What the person who typed the command reads about `error`: the one place errors become words."""
    if isinstance(error, CommandError | ScheduleError):
        return str(error)
    if isinstance(error, JobNotFound):
        return f"There is no job `{error.job_id}` in this channel. `/train list` shows this channel's jobs."
    if isinstance(error, NoWeights):
        rec = error.record
        state = views.STATUS[rec.status][1].lower()
        return f"Job `{rec.job_id}` has no weights to download (it is {state}). `/train status {rec.job_id}` shows it."
    not_started = f"Job `{job_id}` was not started: " if job_id else ""
    cause = error.cause if isinstance(error, StartFailed) else error
    if isinstance(cause, SlackApiError) and cause.response.get("error") in UNREACHABLE_CHANNEL:
        return (
            f"{not_started}I can't post in this channel. Invite me with `/invite @Spotter`, then run the command again."
        )
    if job_id:
        return f"{not_started}something went wrong on Spotter's side ({type(cause).__name__}). Try again in a minute."
    return f"Something went wrong on Spotter's side ({type(cause).__name__}). Try again in a minute."


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


def _team(body: dict[str, Any]) -> str:
    return str(body.get("team_id") or (body.get("team") or {}).get("id") or "")


def _action_channel(body: dict[str, Any]) -> str:
    return str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id"))


def final_refusal(body: dict[str, Any], settings: AppSettings) -> rules.AccessRefused | None:
    """A refusal to start a job that no user group could lift (so the ack can give it): team, channel, or a user
    who is not allowed where no user groups are configured."""
    refused = rules.start_refused(_team(body), body["channel_id"], body["user_id"], (), settings)
    if refused is None or refused.reason in ("team", "channel") or not settings.usergroups:
        return refused
    return None


def refusal(refused: rules.AccessRefused) -> views.Message:
    return views.error_message(rules.refusal_text(refused))


# -- acks: pure, no AWS or Slack call --------------------------------------------------------------------------


class Acks:
    """What Slack hears within its three seconds."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings

    def train(self, ack: Ack, body: dict[str, Any]) -> None:
        cmd = _parsed(body)
        if not isinstance(cmd, TrainCommand):
            raise TypeError("the train ack runs for train commands only (see its matcher)")
        refused = final_refusal(body, self.settings)
        if refused is not None:
            ack(response_type="ephemeral", **refusal(refused))
            return
        job_id = spec.new_job_id(cmd.dataset, seed=job_seed(body))
        ack(response_type="ephemeral", **views.queued_message(cmd, job_id))

    def later(self, ack: Ack, body: dict[str, Any]) -> None:
        """The answer needs the jobs table, S3 or Scheduler: it comes from the lazy listener through respond()."""
        if self._other_team(_team(body)):
            ack(response_type="ephemeral", **refusal(rules.AccessRefused("start", "team")))
            return
        ack()

    def answer(self, ack: Ack, body: dict[str, Any]) -> None:
        """Everything that needs no data: help, datasets, models, and text that is not a command."""
        if self._other_team(_team(body)):
            ack(response_type="ephemeral", **refusal(rules.AccessRefused("start", "team")))
            return
        parsed = _parsed(body)
        if isinstance(parsed, CommandError):
            message = views.error_message(user_message(parsed))
        elif isinstance(parsed, DatasetsCommand):
            message = views.datasets_message()
        elif isinstance(parsed, ModelsCommand):
            message = views.models_message()
        else:
            message = views.help_message()
        ack(response_type="ephemeral", **message)

    def click(self, ack: Ack) -> None:
        """A button: a link button still reports its click (an unanswered one shows an error), and the Cancel
        (confirmed in Slack's dialog) and Logs buttons are answered by their lazy listeners."""
        ack()

    def _other_team(self, team: str) -> bool:
        return bool(self.settings.allowed_team) and team != self.settings.allowed_team


# -- lazy listeners --------------------------------------------------------------------------------------------


class Jobs:
    """The lazy listeners and what they need: the jobs table, the bus, S3, Scheduler, the settings."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.store = JobsStore(settings.jobs_table, record_days=settings.job_record_days)
        self.bus = Bus(settings.bus_name)
        self.starter = Starter(settings, self.store, self.bus)
        self.groups = GroupMembers()
        self.schedule_settings = ScheduleSettings.from_env()

    def member_of(self, user: str, client: WebClient) -> frozenset[str]:
        if not self.settings.usergroups:
            return frozenset()
        return self.groups.member_of(user, self.settings.usergroups, client)

    # -- starting jobs ---------------------------------------------------------------------------------------

    def queue_job(self, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        """Check access, then start the job; a retried or replayed request finds its job and does nothing."""
        named: str | None = None  # the id the ack announced
        try:
            cmd = _parsed(body)
            if not isinstance(cmd, TrainCommand):
                raise TypeError("queue_job runs for train commands only (see its matcher)")
            if final_refusal(body, self.settings) is not None:
                return  # the ack said so
            user, channel = body["user_id"], body["channel_id"]
            refused = rules.start_refused(_team(body), channel, user, self.member_of(user, client), self.settings)
            if refused is not None:
                logger.info("refused: may not start jobs", user=user, channel=channel, reason=refused.reason)
                respond(response_type="ephemeral", replace_original=True, **refusal(refused))
                return
            seed = job_seed(body)
            job_spec = spec.build_spec(
                cmd.dataset, cmd.model, list(cmd.options), requested_by=user, channel=channel, seed=seed
            )
            named = job_spec.job_id
            started = self.starter.start(job_spec, seed, client, describe=lambda e: user_message(e, named))
            if started.refusal is not None:
                respond(response_type="ephemeral", **started.refusal)
        except Exception as e:
            logger.exception("could not queue the job", job_id=named)
            respond(response_type="ephemeral", **views.error_message(user_message(e, named)))

    # -- looking things up -----------------------------------------------------------------------------------

    def look_up(self, body: dict[str, Any], respond: Respond) -> None:
        """Answer status, list, logs, weights and cost from the jobs table and S3, to the person who asked."""
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
                rec = self.store.get(latest[0].job_id)
            else:
                rec = self._job(cmd.job_id, channel)
            link = weights_link(rec, self.settings)
            return views.job_card(rec, now=now, weights_url=link[1] if link else None)
        if isinstance(cmd, LogsCommand):
            return self.logs(self._job(cmd.job_id, channel))
        if isinstance(cmd, WeightsCommand):
            rec = self._job(cmd.job_id, channel)
            links = weights_links(rec, self.settings, cmd.which)
            if not links:
                raise NoWeights(rec)
            return views.weights_message(rec, links, expires_in=self.settings.presign_seconds, now=now)
        if isinstance(cmd, PromotedWeightsCommand):
            return self.promoted(cmd.dataset, cmd.model)
        raise TypeError("look_up runs for status, list, logs, weights and cost only (see its matcher)")

    def logs(self, rec: JobRecord) -> views.Message:
        s3 = aws_client("s3", self.settings.region)
        view = log_view(s3, self.settings.bucket, rec.job_id, self.settings.presign_seconds)
        if view is None:
            return answers.no_logs_message(rec)
        return answers.logs_message(rec, view, self.settings.presign_seconds)

    def promoted(self, dataset: str, model: str) -> views.Message:
        s3 = aws_client("s3", self.settings.region)
        current = ModelRegistry(s3, self.settings.bucket).promoted(dataset, model)
        if current is None:
            return answers.no_promoted_message(dataset, model)
        links = [
            (
                a,
                str(
                    s3.generate_presigned_url(
                        "get_object",
                        Params={
                            "Bucket": self.settings.bucket,
                            "Key": a.key,
                            "ResponseContentDisposition": f'attachment; filename="{a.key.rsplit("/", 1)[-1]}"',
                        },
                        ExpiresIn=self.settings.presign_seconds,
                    )
                ),
            )
            for a in current.artifacts
        ]
        return answers.promoted_weights_message(dataset, model, current, links, self.settings.presign_seconds)

    def logs_click(self, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """The card's Logs button: the same answer as `/train logs <job>`, to the person who clicked."""
        job_id, channel, user = str(body["actions"][0]["value"]), _action_channel(body), str(body["user"]["id"])
        try:
            message = self.logs(self._job(job_id, channel))
        except JobNotFound as e:
            message = views.error_message(user_message(e))
        except Exception as e:
            logger.exception("could not answer the Logs button", job_id=job_id)
            message = views.error_message(user_message(e))
        self._answer_click(body, respond, client, channel, user, message)

    # -- schedules -------------------------------------------------------------------------------------------

    def schedules(self, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """`/train schedule`, `schedules` and `unschedule`, for those the access rules allow."""
        cmd = _parsed(body)
        user, channel = body["user_id"], body["channel_id"]
        try:
            if isinstance(cmd, SchedulesCommand):
                message = answers.schedules_list(self._scheduler().list(channel))
            elif isinstance(cmd, ScheduleCommand | UnscheduleCommand):
                member_of = self.member_of(user, client)
                refused = rules.start_refused(_team(body), channel, user, member_of, self.settings)
                refused = refused or rules.schedule_refused(user, member_of, self.settings)
                if refused is not None:
                    logger.info("refused: may not manage schedules", user=user, reason=refused.reason)
                    message = refusal(refused)
                elif isinstance(cmd, ScheduleCommand):
                    message = self._schedule(cmd, body)
                else:
                    message = self._unschedule(cmd.schedule_id, channel)
            else:
                raise TypeError("schedules runs for schedule, schedules and unschedule only (see its matcher)")
        except ScheduleError as e:
            message = views.error_message(user_message(e))
        except Exception as e:
            logger.exception("could not answer a schedule command")
            message = views.error_message(user_message(e))
        respond(response_type="ephemeral", **message)

    def _scheduler(self) -> Schedules:
        return Schedules.from_settings(self.schedule_settings, self.settings.region)

    def _schedule(self, cmd: ScheduleCommand, body: dict[str, Any]) -> views.Message:
        run = ScheduledRun(
            schedule_id=commands.new_schedule_id(cmd.dataset, cmd.model, job_seed(body)),
            dataset=cmd.dataset,
            model=cmd.model,
            options=list(cmd.options),
            channel=body["channel_id"],
            requested_by=body["user_id"],
            label=cmd.when.label,
            expression=cmd.when.expression,
            timezone=cmd.timezone,
        )
        made = self._scheduler().create(run)
        logger.info("schedule created", schedule_id=run.schedule_id, expression=run.expression)
        return answers.schedule_created_message(made)

    def _unschedule(self, schedule_id: str, channel: str) -> views.Message:
        scheduler = self._scheduler()
        found = scheduler.get(schedule_id)
        if found is None or found.run.channel != channel:
            return answers.no_schedule_message(schedule_id)
        scheduler.delete(schedule_id)
        logger.info("schedule deleted", schedule_id=schedule_id)
        return answers.unscheduled_message(found)

    # -- cancelling ------------------------------------------------------------------------------------------

    def cancel(self, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """`/train cancel <job>`."""
        cmd = _parsed(body)
        if not isinstance(cmd, CancelCommand):
            raise TypeError("cancel runs for cancel commands only (see its matcher)")
        message = self._cancel(cmd.job_id, body["channel_id"], body["user_id"], client)
        respond(response_type="ephemeral", **message)

    def cancel_click(self, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """The card's Cancel button: the same decision as `/train cancel`, answered to the person who clicked."""
        job_id, channel, user = str(body["actions"][0]["value"]), _action_channel(body), str(body["user"]["id"])
        message = self._cancel(job_id, channel, user, client)
        self._answer_click(body, respond, client, channel, user, message)

    def _answer_click(
        self, body: dict[str, Any], respond: Respond, client: WebClient, channel: str, user: str, message: views.Message
    ) -> None:
        if body.get("response_url"):
            respond(response_type="ephemeral", replace_original=False, **message)
        else:
            client.chat_postEphemeral(channel=channel, user=user, **message)

    def _cancel(self, job_id: str, channel: str, user: str, client: WebClient) -> views.Message:
        """Ask the control plane to cancel, if `user` may: the bot never changes the job's status itself."""
        try:
            rec = self._job(job_id, channel)
            refused = rules.cancel_refused(
                rec,
                user,
                self.settings.admins,
                member_of=self.member_of(user, client),
                admin_usergroups=self.settings.admin_usergroups,
            )
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
    jobs, acks = Jobs(settings), Acks(settings)
    # bolt starts every lazy listener of the matching listener: matchers keep help from re-invoking the function.
    app.command("/train", matchers=[_kind_is("train")])(ack=acks.train, lazy=[jobs.queue_job])
    app.command("/train", matchers=[_kind_is(*LOOKUPS)])(ack=acks.later, lazy=[jobs.look_up])
    app.command("/train", matchers=[_kind_is(*SCHEDULING)])(ack=acks.later, lazy=[jobs.schedules])
    app.command("/train", matchers=[_kind_is("cancel")])(ack=acks.later, lazy=[jobs.cancel])
    app.command("/train")(acks.answer)
    app.action(views.DOWNLOAD_ACTION)(acks.click)
    app.action(views.CANCEL_ACTION)(ack=acks.click, lazy=[jobs.cancel_click])
    app.action(views.LOGS_ACTION)(ack=acks.click, lazy=[jobs.logs_click])
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
