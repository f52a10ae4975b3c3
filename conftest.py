# Wires seamcheck's fixture modules; nothing else lives here.
pytest_plugins = ["fixtures.stack", "fixtures.pipeline", "fixtures.chaos"]
