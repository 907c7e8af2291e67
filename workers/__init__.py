"""Background jobs on procrastinate, in the same PostgreSQL as everything else."""
