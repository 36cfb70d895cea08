def load_pretrained(model, path):
    raise NotImplementedError
