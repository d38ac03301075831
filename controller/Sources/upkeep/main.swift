print("upkeep")
