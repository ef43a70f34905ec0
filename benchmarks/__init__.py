"""qhytime's benchmarks: ``python -m benchmarks`` runs every figure (see benchmarks/README.md)."""
