"""The opt-in form server: everything between a visitor's POST and ConvertKit."""
