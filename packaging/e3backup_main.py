"""Entry point of the single-file Windows agent (PyInstaller; docs/windows.md)."""

from e3backup.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
