"""``python -m connector`` runs the CLI."""

from connector.cli import main

if __name__ == "__main__":
    main()
