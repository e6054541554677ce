"""edgefleet device agent: runs on the device, imports nothing from the controller."""

# The one version of the package (pyproject.toml reads it): agents report it in GetVersion
# and `fleet device upgrade` checks that the new one runs.
__version__ = "0.2.0.dev0"
