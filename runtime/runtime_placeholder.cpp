namespace ftune {}
