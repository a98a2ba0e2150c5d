"""``python -m connector`` runs the CLI."""

from connector.cli import run

if __name__ == "__main__":
    run()
