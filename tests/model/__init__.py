"""Unit tests of patter_dash/model/, one file per module (the end-to-end tests are in tests/)."""
