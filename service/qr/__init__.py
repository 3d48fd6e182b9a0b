"""The account's parametric QR codes, and desktop "scan to follow and sign in" sessions."""
