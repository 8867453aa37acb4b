"""Write-back: what arsync does in the outside world, exactly once, and the words it uses."""
