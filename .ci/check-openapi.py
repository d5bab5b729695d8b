#!/usr/bin/env python3
"""Validates docs/openapi.yaml against the OpenAPI 3.0 schema. Whether its
routes are the deployed ones and are served by the code is checked by the
integration tests (tests/tests/integration/openapi.rs)."""
import sys
from pathlib import Path

from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

path = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
spec, _ = read_from_filename(str(path))
validate(spec)
operations = sum(len(item) for item in spec["paths"].values())
print(f"docs/openapi.yaml: valid OpenAPI {spec['openapi']}, {operations} operations")
sys.exit(0)
