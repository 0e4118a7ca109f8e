"""Stage 1 and the evaluation it shares with stage 2: supernet training and subnet evaluation."""
