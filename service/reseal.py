"""`python -m service.reseal`: re-seal stored tokens with the first of DATA_KEYS.

Run it after putting a new data key first in DATA_KEYS (all instances restarted with the new
list), then remove the old key. Also seals tokens stored before DATA_KEYS was set.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from service.clock import SystemClock
from service.config import ConfigError, load_settings
from service.logs import configure_logging
from service.store.connection import open_database
from service.store.queries import Store
from service.store.sealing import Sealer, parse_data_keys

log = logging.getLogger("service.reseal")


async def reseal() -> int:
    settings = load_settings()
    sealer = Sealer(parse_data_keys(settings.data_keys))
    if not sealer.enabled:
        raise ConfigError("DATA_KEYS is not set: there is no key to seal with")
    async with open_database(settings) as db:
        count = await Store(db, clock=SystemClock(), sealer=sealer).reseal_web_tokens()
    log.info("re-sealed %s stored tokens with data key %r", count, sealer.current)
    return count


def main() -> int:
    configure_logging("INFO", "text")
    try:
        asyncio.run(reseal())
    except ConfigError as exc:
        log.error("cannot re-seal: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
