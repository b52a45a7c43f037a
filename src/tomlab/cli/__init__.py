"""The command line (``tomlab``): it sits on top of the library, and nothing imports it."""
