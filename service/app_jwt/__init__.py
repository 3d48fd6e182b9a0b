"""The app's own JWT: the keys it is signed with, their JWKS, issuing and verifying it."""
