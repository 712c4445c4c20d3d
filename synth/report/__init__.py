"""What a user sees of a run: progress events, the terminal, `synth show` and the HTML report."""
