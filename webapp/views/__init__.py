"""The app's pages as plain functions, so each stays small and is run by a thin page script."""
