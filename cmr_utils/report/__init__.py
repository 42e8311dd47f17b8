"""What people read and share from runs: pages, tables, figures, search, comparison, zip and MLflow log."""
