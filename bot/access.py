"""Who the person asking is, for the access rules: the user groups they belong to, read from Slack and cached.

Only the groups the configuration names are looked up (`usergroups.users.list`, scope usergroups:read), once per
group per GROUP_CACHE_SECONDS in a warm function; a lookup that fails counts as "not a member" (access is refused
rather than granted when Slack cannot say), and is logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from aws_lambda_powertools import Logger
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

logger = Logger()

GROUP_CACHE_SECONDS = 300


class GroupMembers:
    """Members of Slack user groups, cached per process."""

    def __init__(self, ttl: float = GROUP_CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def member_of(self, user: str, groups: Iterable[str], client: WebClient) -> frozenset[str]:
        """The groups among `groups` that `user` is in."""
        return frozenset(g for g in sorted(set(groups)) if user in self.members(g, client))

    def members(self, group: str, client: WebClient) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(group)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            resp = client.usergroups_users_list(usergroup=group)
            users = frozenset(str(u) for u in resp.get("users") or [])
        except (SlackApiError, SlackClientError, OSError) as e:
            logger.warning("could not read a user group's members", usergroup=group, error=str(e))
            return frozenset()
        with self._lock:
            self._cache[group] = (now, users)
        return users

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
