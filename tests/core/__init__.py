"""Unit tests of patter_dash/core/, one file per module (the end-to-end tests are in tests/)."""
