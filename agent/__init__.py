"""edgefleet device agent: runs on the device, imports nothing from the controller."""

__version__ = "0.1.0"
