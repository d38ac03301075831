print("upkeep-agent")
