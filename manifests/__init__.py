"""The built-in manifests and schemas, shipped as package data."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
