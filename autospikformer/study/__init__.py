"""Studies in an Optuna RDB: study files, storage, stage 1, search workers and export."""
