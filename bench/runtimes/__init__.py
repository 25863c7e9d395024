"""Runtimes: what bench knows about each kind of server, behind one protocol."""
