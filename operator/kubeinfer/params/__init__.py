"""Engine parameters: catalogs from the engines' own parsers, and the checks built on them.

Shared with the runtime, so nothing here imports the operator's other modules.
"""
