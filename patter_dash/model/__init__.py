"""What an event and a call are: typed events, cleaning, Patter's shapes, call records. Imports nothing of the project but config."""
