"""The controller database's schema history, as Alembic migrations (``versions/``).

``HEAD`` names the newest revision this code knows; a test checks it against the scripts, so
``controller.adapters.schema`` can tell in one query whether a database is current without
loading the migration scripts on every command.
"""

HEAD = "0011_calibration_backend"
