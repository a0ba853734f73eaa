# Read by `flask …` (python-dotenv) so commands find the app without --app; values in .env or the
# environment win. Secrets belong in .env (not committed) or the platform's settings, never here.
FLASK_APP=app
