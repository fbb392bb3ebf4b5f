"""The IdP's own browser session: single sign-on after a QR login, and logout."""
