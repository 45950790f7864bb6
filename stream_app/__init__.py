"""The streaming service: Faust app, agents, tables, sinks, replay and CLI.

Importing the package itself stays light (no faust); submodules that need
faust import it themselves.
"""
