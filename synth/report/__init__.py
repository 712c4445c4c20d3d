"""What a user sees of a run: progress events, `synth show` and `synth status`, and the HTML report."""
