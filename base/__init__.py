"""The base every process imports: settings, queue names, logging, ids, publishing.

Imports nothing of gpubill's other packages (docs/architecture.md, "Layers")."""
