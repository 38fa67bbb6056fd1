"""The `render` fixture of the chart tests (see chart_render.py)."""

import pytest
from chart_render import Render, renderer


@pytest.fixture
def render() -> Render:
    return renderer()
