"""Work nobody awaits (background tasks, scheduler jobs) leaves its failures in the log.

A bug there has no caller to raise to: its traceback must be logged, or it is lost. WeChat
being down is expected trouble and takes one line, not a traceback a minute.
"""

from __future__ import annotations

import asyncio
import logging

from service.push.background import Background
from service.tokens.upkeep import run_job
from service.wechat.client import WeChatTimeout


async def test_a_failed_background_task_is_logged_with_its_traceback(caplog):
    background = Background()

    async def broken() -> None:
        raise RuntimeError("a bug in the follow-up work")

    task = background.spawn("qr sign-in", broken())
    await asyncio.wait([task])
    await asyncio.sleep(0)  # the done callback runs
    [record] = [r for r in caplog.records if "background qr sign-in failed" in r.getMessage()]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "Traceback" in caplog.text and "a bug in the follow-up work" in caplog.text


async def test_a_scheduled_job_logs_a_bug_with_its_traceback_and_wechat_trouble_in_a_line(caplog):
    async def bug() -> None:
        raise KeyError("expiresAt")

    async def wechat_down() -> None:
        raise WeChatTimeout("cgi-bin/stable_token: no answer in 5 s")

    await run_job("web-token sweep", bug)
    await run_job("base-token check", wechat_down)
    bug_record, down_record = caplog.records
    assert bug_record.levelno == logging.ERROR and bug_record.exc_info is not None
    assert "web-token sweep" in bug_record.getMessage()
    assert down_record.levelno == logging.WARNING and down_record.exc_info is None
    assert "no answer in 5 s" in down_record.getMessage()
