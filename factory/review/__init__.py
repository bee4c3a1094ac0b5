"""The review wing: what a registry change does (diff), what a reviewer would miss (lint), findings and formats."""
