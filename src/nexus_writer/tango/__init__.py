"""Tango adapter: the ``BlissWriter`` device BLISS 2.x asks about saving
(:mod:`.device`, needs pytango: the ``[tango]`` extra) and its registration
(:mod:`.register`).  Nothing in the core imports it."""
