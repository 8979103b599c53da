"""``python -m cascade_gateway``: serve the HTTP gateway with uvicorn (settings from ``CASCADE_*``)."""

from __future__ import annotations

import uvicorn
from cascade_platform.logs import setup_logging
from cascade_platform.settings import load_settings

from cascade_gateway.app import create_app
from cascade_gateway.settings import GatewaySettings


def main() -> None:
    settings = load_settings(GatewaySettings)
    setup_logging("gateway", settings.log_level, settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
