"""Django settings for toolboxai jobs.

Every value comes from the environment, with defaults for a local machine
(``make run`` starts an embedded Postgres and Redis and sets both URLs). This
package is the only code that reads the environment; docs/configuration.md
documents every variable. One module per part: ``base`` (Django itself),
``jobs`` (the job system), ``api`` (the REST API) and ``logs``.
"""

from __future__ import annotations

from toolboxai.settings.api import *  # noqa: F403
from toolboxai.settings.base import *  # noqa: F403
from toolboxai.settings.jobs import *  # noqa: F403
from toolboxai.settings.logs import *  # noqa: F403
